"""Translation between foreign API shapes (AUTOMATIC1111's /sdapi/v1, OpenAI's
/v1/images) and our GenerationRequest / job views.

Pure functions over plain data: no HTTP, no jobs, no engine. The routers in
`server/routers/a1111.py` and `server/routers/openai.py` call these and the
job service, nothing else, so every way in runs the same generation code."""
