"""hub: moves wmsim bundle files to and from the Hugging Face Hub. It knows no model code."""

__all__: list[str] = []
