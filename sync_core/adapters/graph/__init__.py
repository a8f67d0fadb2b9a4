"""Microsoft Graph through msgraph-sdk: reads, writes, subscriptions, limits, errors."""
