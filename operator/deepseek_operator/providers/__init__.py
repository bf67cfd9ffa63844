"""Metric providers and traffic routers, behind Protocols."""
