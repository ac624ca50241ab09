-- Colleagues are visible within the organization, never across. The helpers
-- read public.users as its owner (SECURITY DEFINER), which is why these
-- policies on users do not recurse into themselves.
ALTER TABLE public.users ENABLE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS users_select_same_org ON public.users;
CREATE POLICY users_select_same_org ON public.users
  FOR SELECT TO authenticated, org_admin
  USING (org_id = (SELECT app.current_org_id()));

-- Members may edit only their own profile (the column grant limits it to name).
DROP POLICY IF EXISTS users_update_self ON public.users;
CREATE POLICY users_update_self ON public.users
  FOR UPDATE TO authenticated
  USING (id = (SELECT app.current_user_id()))
  WITH CHECK (id = (SELECT app.current_user_id()) AND org_id = (SELECT app.current_org_id()));

DROP POLICY IF EXISTS users_insert_admin ON public.users;
CREATE POLICY users_insert_admin ON public.users
  FOR INSERT TO org_admin
  WITH CHECK (org_id = (SELECT app.current_org_id()) AND (SELECT app.is_org_admin()));

DROP POLICY IF EXISTS users_update_admin ON public.users;
CREATE POLICY users_update_admin ON public.users
  FOR UPDATE TO org_admin
  USING (org_id = (SELECT app.current_org_id()) AND (SELECT app.is_org_admin()))
  WITH CHECK (org_id = (SELECT app.current_org_id()) AND (SELECT app.is_org_admin()));
