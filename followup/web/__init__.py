"""The web layer: thin routes that parse, call one service, and map errors to HTTP."""
