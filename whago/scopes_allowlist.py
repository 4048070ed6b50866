"""Where django-scopes' tenant guard may be switched off, and why.

Every tenant-owned query runs in its tenant's scope: portal and API views through the middleware,
tasks through whago.tasks.TenantTask, services that are given a tenant (or a row of one) by opening
`scope(tenant=...)` themselves. The guard is switched off (`scopes_disabled()`, or a scoped manager's
`.with_scopes_disabled()`) only in the functions listed here, each with the reason it must see more
than one tenant. tests/whago/test_scopes_allowlist.py reads every .py of whago, chips, waha, billing
and proxies (ast) and fails on such a call in a function not listed, and on an entry that no longer
makes one.

Keys are "module:function" ("module:Class.method"; "module:outer.inner" for a nested function).
"""

# Cross-tenant by nature: sweeps over every tenant, receivers that find the tenant from the request,
# the operators' admin and console, sign-up and log-in before a tenant is chosen, and containers,
# which may be shared by several tenants (a shared one belongs to none).
CROSS_TENANT: dict[str, str] = {
    # billing
    "billing.services:expire_subscriptions": "beat sweep over every tenant's due subscriptions",
    "billing.services:process_event": "payment webhook: the tenant is found from the gateway's event",
    # chips: beat sweeps, each handling every row it finds in that row's tenant's scope
    "chips.dispatch:kick": "beat sweep over every tenant's campaigns (each one handled in its scope)",
    "chips.dispatch:stale_claims": "beat sweep: every tenant's claims whose lane died",
    "chips.inbound_media:lost_fetches": "beat sweep over every container's stored webhooks and every tenant's files",
    "chips.lifecycle:fail_stale_provisioning": "beat sweep over every tenant's chips stuck provisioning",
    "chips.lifecycle:stalled_provisioning": "beat sweep over every tenant's chips stuck provisioning",
    "chips.outgoing:overdue_deliveries": "beat sweep over every tenant's pending webhook deliveries",
    "chips.outgoing:prune_deliveries": "pruning sweep over every tenant's delivery log",
    "chips.sending:sweep": "beat sweep over every tenant's queued messages (each settled in its scope)",
    # proxies
    "proxies.services:assign": "session names are global: refuses a name another tenant holds",
    "proxies.services:assignment_for": "by WAHA session name, before the tenant is known (egress lookup)",
    "proxies.services:release": "by WAHA session name: the chip and its tenant may be gone",
    "proxies.services:run_health_checks": "beat sweep over every provider and assignment",
    "proxies.services:evacuate": "moves every tenant's sessions off unhealthy proxies",
    # waha: containers may be shared, sweeps, the operators' console, the webhook receiver
    "waha.alerts:alert_sweep": "beat sweep over every container",
    "waha.containers:delete_container": "a container may be shared (no tenant)",
    "waha.containers:ensure_started": "a container may be shared (no tenant)",
    "waha.containers:record_capabilities": "a container may be shared (no tenant)",
    "waha.containers:restart_runtime": "a container may be shared (no tenant)",
    "waha.containers:start_container": "a container may be shared (no tenant)",
    "waha.containers:stop_container": "a container may be shared (no tenant)",
    "waha.health:_record": "health sweep: a container may be shared (no tenant)",
    "waha.health:health_sweep": "beat sweep over every container",
    "waha.management.commands.waha_doctor:Command.check_containers": "operators' command over every container",
    "waha.management.commands.waha_doctor:Command.check_orphans": "operators' command over every container",
    "waha.management.commands.waha_doctor:Command.check_ports": "operators' command over every container",
    "waha.ops:_delete": "operators' console: a container's sessions of every tenant",
    "waha.ops:_refuse_suspended": "operators' console: a container may be shared",
    "waha.ops:_running_entry": "operators' console: audit entries of any tenant",
    "waha.ops:_suspend_in_shared": "a shared container holds other tenants' sessions",
    "waha.ops:_wait_stopped_recorded": "operators' console: a container may be shared",
    "waha.ops:read_logs": "operators' console: any container",
    "waha.ops:run_action": "operators' console: any container",
    "waha.ops:shared_containers_of": "shared containers belong to no tenant",
    "waha.ops:utilisation": "operators' console: every container",
    "waha.orphans:_runtimes_in_use": "orphan sweep: every container",
    "waha.orphans:cleanup_orphans": "orphan sweep: every container",
    "waha.orphans:find_orphans": "orphan sweep: every container",
    "waha.placement:ensure_container": "placement chooses among shared containers (no tenant)",
    "waha.placement:move_container": "a container may be shared (no tenant)",
    "waha.placement:relocate_stranded": "beat sweep over every pinned container",
    "waha.sessions:create_session": "placement chooses among shared containers (no tenant)",
    "waha.sessions:wanted_sessions": "a shared container holds several tenants' sessions",
    "waha.stats:stats_sweep": "beat sweep over every container",
    "waha.tasks:prune_webhook_events": "pruning sweep over every tenant's events",
    "waha.webhooks:receive": "WAHA webhook: the container (and its tenant) is found from the request",
    # whago
    "whago.admin_site:WhagoAdminSite.admin_view.unscoped": "the operators' admin sees every tenant",
    "whago.audit:_finish": "the operators' audit log: entries of any tenant or none",
    "whago.audit:record": "the operators' audit log: entries of any tenant or none",
    "whago.audit:wait": "the operators' audit log: entries of any tenant or none",
    "whago.console.dashboard:totals": "the operators' dashboard: figures over every tenant",
    "whago.services:authenticate_api_key": "API log-in: the tenant is found from the key",
    "whago.services:find_invitation": "by token, before the tenant is known",
    "whago.services:sign_up": "creates the tenant: no scope exists before it",
    "whago.services:suspended_tenant_of_key": "API log-in: the tenant is found from the key",
    "whago.services:suspended_tenants_of": "a user's memberships across tenants",
    "whago.tasks:prune_audit_log": "pruning sweep over every tenant's entries",
    "whago.tasks:tenant_of_row.find": "a task queued in its old form (no tenant_id): its tenant read from its row",
    "whago.tenancy:memberships_of": "log-in: a user's memberships across tenants",
    "whago.tenancy:suspended_membership": "log-in: a user's memberships across tenants",
    "whago.views:switch_tenant": "the tenant switcher: the user's memberships across tenants",
}

# Work for one tenant that still switches the guard off: to be run in the tenant's scope. Empty: keep it so.
NOT_YET_CONVERTED: dict[str, str] = {}

ALLOWED: dict[str, str] = {**CROSS_TENANT, **NOT_YET_CONVERTED}
