"""Built-in speech-commands plugin: keyword spotting from short audio clips."""


def register(register):
    from plugins.speech_commands import layers  # noqa: F401  (registers the serialisable layers)
    from plugins.speech_commands.task import SpeechCommandsTask

    register(SpeechCommandsTask())
