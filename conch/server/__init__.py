"""The conch server: OpenAI-compatible HTTP in front of conch.engine, the way vLLM's entrypoints/openai sits in
front of its engine.

    app.py                  create_app: routes, middleware, error handlers, models loading in the background
    routes.py               the route table: each endpoint hands its work to its family's serving module
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
    settings.py             what to serve: every serve setting and its default (ServeSettings)
    cli.py, __main__        the command line, made from the settings' fields
    deploy.py, smoke.py     the serve rule's work: the --config file, the smoke test, the manifest
    page.py                 the chat page
"""
