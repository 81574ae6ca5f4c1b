"""Built-in speech-commands plugin: keyword spotting from short audio clips."""


def register(register):
    from plugins.speech_commands.task import SpeechCommandsTask

    register(SpeechCommandsTask())
