-- Members see all their org's orders but change only their own; admins manage
-- every order of their org. Deleting is admin-only (members have no DELETE grant
-- and no DELETE policy).
ALTER TABLE public.orders ENABLE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS orders_select_same_org ON public.orders;
CREATE POLICY orders_select_same_org ON public.orders
  FOR SELECT TO authenticated, org_admin
  USING (org_id = (SELECT app.current_org_id()));

-- created_by must be the caller: an agent cannot file orders in a colleague's name.
DROP POLICY IF EXISTS orders_insert_member ON public.orders;
CREATE POLICY orders_insert_member ON public.orders
  FOR INSERT TO authenticated
  WITH CHECK (org_id = (SELECT app.current_org_id())
              AND created_by = (SELECT app.current_user_id()));

-- Other people's orders are simply not matched (0 rows), not an error.
DROP POLICY IF EXISTS orders_update_own ON public.orders;
CREATE POLICY orders_update_own ON public.orders
  FOR UPDATE TO authenticated
  USING (org_id = (SELECT app.current_org_id())
         AND created_by = (SELECT app.current_user_id()))
  WITH CHECK (org_id = (SELECT app.current_org_id())
              AND created_by = (SELECT app.current_user_id()));

DROP POLICY IF EXISTS orders_insert_admin ON public.orders;
CREATE POLICY orders_insert_admin ON public.orders
  FOR INSERT TO org_admin
  WITH CHECK (org_id = (SELECT app.current_org_id())
              AND created_by = (SELECT app.current_user_id())
              AND (SELECT app.is_org_admin()));

DROP POLICY IF EXISTS orders_update_admin ON public.orders;
CREATE POLICY orders_update_admin ON public.orders
  FOR UPDATE TO org_admin
  USING (org_id = (SELECT app.current_org_id()) AND (SELECT app.is_org_admin()))
  WITH CHECK (org_id = (SELECT app.current_org_id()) AND (SELECT app.is_org_admin()));

DROP POLICY IF EXISTS orders_delete_admin ON public.orders;
CREATE POLICY orders_delete_admin ON public.orders
  FOR DELETE TO org_admin
  USING (org_id = (SELECT app.current_org_id()) AND (SELECT app.is_org_admin()));
