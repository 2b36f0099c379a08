"""The pages and partials of the library, one module for each part of it (see models_app/urls.py)."""
