"""Generated from protos/seamcut/v1/*.proto by scripts/gen_protos.py. Do not edit."""
