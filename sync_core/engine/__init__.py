"""The rule engine: decide() and its flows, from facts to actions that name their rule. Pure."""
