"""What every provider emulator shares: the emulated clock and its timers, the request-rate
limit, and the signed-callback sender with retries. Provider specifics stay in their packages.
"""
