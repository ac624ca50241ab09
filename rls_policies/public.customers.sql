-- Everyone in the org may look customers up (members without email/phone, by
-- column grant); only admins change the customer list.
ALTER TABLE public.customers ENABLE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS customers_select_same_org ON public.customers;
CREATE POLICY customers_select_same_org ON public.customers
  FOR SELECT TO authenticated, org_admin
  USING (org_id = (SELECT app.current_org_id()));

-- WITH CHECK pins new and edited rows to the admin's own org.
DROP POLICY IF EXISTS customers_insert_admin ON public.customers;
CREATE POLICY customers_insert_admin ON public.customers
  FOR INSERT TO org_admin
  WITH CHECK (org_id = (SELECT app.current_org_id()) AND (SELECT app.is_org_admin()));

DROP POLICY IF EXISTS customers_update_admin ON public.customers;
CREATE POLICY customers_update_admin ON public.customers
  FOR UPDATE TO org_admin
  USING (org_id = (SELECT app.current_org_id()) AND (SELECT app.is_org_admin()))
  WITH CHECK (org_id = (SELECT app.current_org_id()) AND (SELECT app.is_org_admin()));

DROP POLICY IF EXISTS customers_delete_admin ON public.customers;
CREATE POLICY customers_delete_admin ON public.customers
  FOR DELETE TO org_admin
  USING (org_id = (SELECT app.current_org_id()) AND (SELECT app.is_org_admin()));
