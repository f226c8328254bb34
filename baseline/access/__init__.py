"""Who may do what: scoped secrets, named users with roles, sign-in limits, the audit
trail and the Host-header check (docs/operations.md#users-roles-and-credentials)."""
