"""salience inside other libraries: importing a submodule registers it.

- salience.integrations.transformers: attn_implementation="salience" for
  Hugging Face transformers models (and sentence-transformers through
  model_kwargs); needs `transformers` (the salience[transformers] extra).
"""
