"""One package per chapter, ``curvnb.studies.<id>``, split into ``compute`` (what cached results
depend on: ``Config``, ``PROFILES`` ({"quick", "full", "smoke"} -> Config), ``run(config, *, device,
seed) -> dict`` of plain, cacheable data, and the pieces it caches) and ``report`` (``claims(results,
config) -> list[Claim]``, figure functions returning matplotlib figures, slider views, prose). The
package re-exports both and defines ``TITLE`` and ``COST`` (profile -> rough cost). ``compute``
never imports ``report``, claims, figures or widgets (see :func:`curvnb.cache.compute_sources`)."""

CHAPTERS = ("intro", "toolkit", "huh2020", "orvieto2021", "jastrzebski2020", "duersch2024", "buffelli2024", "atlas")
