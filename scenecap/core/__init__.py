"""The shared core every layer stands on: settings, errors, URL safety, media sniffing,
signing, logging and the job enums. It imports nothing of api/, worker/ or db/."""
