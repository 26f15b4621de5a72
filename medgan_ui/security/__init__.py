"""What keeps the app safe on a hospital network: which server paths may be read, limits on what comes
in, login back-off, HTTP hardening, safe CSV cells and the one-writer workspace lock.

Everything that arrives over the web is untrusted; these modules are the checks the handlers call.
"""
