"""The RAG branch: a knowledge base built by the DAG and answered from by the served model.

ingest (files -> normalised documents) -> chunk (structure-aware, token-counted) -> embed (cached by chunk id)
-> index (FAISS + BM25 + chunk store) -> retrieve (hybrid, threshold, top-k, optional rerank); the server
answers from it (conch.server.serving_rag: /v1/rag/query and /v1/rag/chat/completions). `prompt` is shared by
the server and the eval rule.
"""
