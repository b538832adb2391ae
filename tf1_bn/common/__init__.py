"""Shared foundations: errors, logging and one-time warnings, argument validation, variable assignment, progress.

Everything else imports from here; nothing here imports from the rest of tf1_bn.
"""
