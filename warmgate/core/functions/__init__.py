"""Functions: what a plugin declares about a pipeline (spec), one pipeline+model loaded on demand
(function), the set of them with its memory budget and reaper (manager), and the loading threads."""
