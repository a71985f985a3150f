"""The scheduler service: consumes cadastro-produtos, transforms, hands records to the API."""
