"""The steps of a run: build loggers and trainers, fit the models a defense asks for, evaluate
them under attack, write results. :func:`advlab.run.run` strings them together."""
