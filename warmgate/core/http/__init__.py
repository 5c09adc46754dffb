"""The HTTP edge: the app, its routes, middleware, request decoding, errors, auth and the OpenAPI document."""
