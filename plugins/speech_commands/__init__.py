"""Built-in speech-commands plugin: keyword spotting from short audio clips."""


def register(register):
    from suite_plugins.speech_commands.task import SpeechCommandsTask

    register(SpeechCommandsTask())
