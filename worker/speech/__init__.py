"""Speech: audio decoded in the sandbox, transcribed by an OpenAI-compatible server."""
