"""The conch server: FastAPI app serving merged models (or base + LoRA adapter)."""
