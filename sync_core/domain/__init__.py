"""The vocabulary: meetings, actions, messages, the policy, identities and time zones. Pure."""
