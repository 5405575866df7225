"""A small AST mutation tester for the pure core: ``python -m mutate`` (``make mutate``).

``operators`` lists every mutation point of a module and writes one mutant's source; ``runner`` runs the
module's own unit tests against each mutant in a forked child (a copy of the layer on ``sys.path`` first,
the heavy test imports already loaded) and reports which mutants survived; ``equivalent`` lists the
surviving mutants that no test can kill, each with why.
"""
