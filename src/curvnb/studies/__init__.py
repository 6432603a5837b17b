"""One module per chapter. Each defines ``TITLE``, ``COST`` (profile -> rough cost),
``Config`` (a dataclass), ``PROFILES`` ({"quick": Config(...), "full": Config(...)}),
``run(config, *, device, seed) -> dict`` (plain, cacheable data), ``claims(results, config)
-> list[Claim]`` and figure functions returning matplotlib figures."""

CHAPTERS = ("intro", "toolkit", "huh2020", "orvieto2021", "jastrzebski2020", "duersch2024", "buffelli2024", "atlas")
