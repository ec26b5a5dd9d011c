"""The conch server: OpenAI-compatible HTTP in front of conch.engine, the way vLLM's entrypoints/openai sits in
front of its engine.

    app.py                  create_app: routes, middleware, error handlers, models loading in the background
    routes.py               the endpoints, each handing its work to the serving module of its family
    serving.py              what the families share: prompt checks, submitting (n choices), waiting, SSE
    serving_chat.py         /v1/chat/completions and /generate
    serving_completions.py  /v1/completions
    serving_rag.py          /v1/rag/query and /v1/rag/chat/completions (with --rag-index)
    protocol.py             OpenAI request schemas and response bodies
    logprobs.py             log-probabilities in OpenAI's chat and completions shapes
    models.py               the served models: an engine client per name, health
    errors.py               OpenAI-shaped errors
    middleware.py           API key, body size limit, request metrics
    metrics.py              /metrics
    settings.py, __main__   what to serve, from the command line or a YAML file
    smoke.py, page.py       the serve rule's smoke test; the chat page
"""
