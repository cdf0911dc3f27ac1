"""What every provider emulator shares: the emulated clock and its timers, the request-rate
limit, the signed-callback sender with retries, the lifecycle of that background work, the
gateway's fault injection, the control API's common routes and the CLI plumbing. Provider
specifics (endpoints, error tables, bodies, defaults) stay in their packages.
"""
