-- Tenant isolation: a user sees only the organization they belong to.
-- Helpers are wrapped in (SELECT ...) so Postgres evaluates them once per
-- statement (an InitPlan) instead of once per row.
ALTER TABLE public.organizations ENABLE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS organizations_select_own ON public.organizations;
CREATE POLICY organizations_select_own ON public.organizations
  FOR SELECT TO authenticated, org_admin
  USING (id = (SELECT app.current_org_id()));

-- is_org_admin() double-checks the app-level role, so holding the org_admin
-- database role with a member's JWT grants nothing extra.
DROP POLICY IF EXISTS organizations_update_admin ON public.organizations;
CREATE POLICY organizations_update_admin ON public.organizations
  FOR UPDATE TO org_admin
  USING (id = (SELECT app.current_org_id()) AND (SELECT app.is_org_admin()))
  WITH CHECK (id = (SELECT app.current_org_id()) AND (SELECT app.is_org_admin()));
