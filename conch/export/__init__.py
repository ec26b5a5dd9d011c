"""GGUF export for llama.cpp and Ollama: convert a merged model, check it against the merged model, write a Modelfile.

No maintained package ships llama.cpp's converter (its repository publishes only the `gguf` writer library on
PyPI), so `convert` is a small converter of our own on top of that library, for the architectures conch tests.
"""
