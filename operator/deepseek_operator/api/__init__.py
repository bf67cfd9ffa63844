"""Pydantic v2 models of the DeepSeekDeployment CRD: the single source of truth for spec and status."""
