"""The emulator framework: what every provider emulator is made of, written once.

``emulator.Emulator`` (clock, faults, request stats, callback sender, the ASGI app and its
background work), ``gateway.Gateway`` (route match, counts, rate limit, injected faults),
``cli.EmulatorCommand`` (every flag, config from flags, serving), ``config.EmulatorSettings``
(the shared settings), ``control`` (the shared ``/_emulator`` routes), and below them the clock,
the fault injector, the rate limit, the notifier and its HTTP poster. A provider's package keeps
only what is its own: endpoints, checks and their order, error tables, bodies, defaults, help
texts. See README.md.
"""
