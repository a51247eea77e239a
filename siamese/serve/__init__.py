"""`siamese serve`: the model and its index behind a JSON API and one web page.

- config.py: ServeConfig, every default of the server in one place;
- service.py: Service, the framework-free core (search, classify, verify, items, map, pairs);
- latent_map.py, pair_proposals.py, pairs_log.py, item_images.py, uploads.py: one concept each;
- app.py: the FastAPI application over a Service (routes, token, upload limit, errors as JSON);
- static/: the page (plain HTML/JS/CSS, no build step, works offline).

Nothing here is imported by the rest of the library; `siamese.cli.serve` starts it.
"""
