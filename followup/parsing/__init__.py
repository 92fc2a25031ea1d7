"""Parsing what arrives from outside: inbound email, its quoted history and signatures."""
