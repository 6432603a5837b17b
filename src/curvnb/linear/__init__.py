"""Deep linear networks: models, data, closed-form dynamics and conserved quantities."""
