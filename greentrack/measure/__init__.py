"""The measuring core: sessions, the sampler thread, power sources, energy integration and attribution.

:mod:`.tracker` holds :class:`Session` (``greentrack.session()``), :mod:`.sampler` the thread that
polls :mod:`.sources`, :mod:`.energy` the pure integration maths, :mod:`.attribution` the
split of a finished run over devices, phases and steps, :mod:`.result` what a run reports,
:mod:`.view` the read-only view hooks receive, :mod:`.lifecycle` signals, fork and exit.
It imports the store and carbon layers, never views, the CLI or the pytest plugin.
"""
