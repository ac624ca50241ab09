"""From a checked request to SQL text: filters (sqlglot allowlist), statements, bind values."""
