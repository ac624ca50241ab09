-- Invoices are financial records: members only read them, admins issue and
-- settle them, nobody deletes them (void instead).
ALTER TABLE public.invoices ENABLE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS invoices_select_same_org ON public.invoices;
-- Policies can also restrict by the OAuth client the agent signed in with: a
-- support bot acting for a user never sees that org's invoices, even for an admin.
CREATE POLICY invoices_select_same_org ON public.invoices
  FOR SELECT TO authenticated, org_admin
  USING (org_id = (SELECT app.current_org_id())
         AND coalesce((SELECT auth.jwt()) ->> 'client_id', '') NOT LIKE '%support-bot');

DROP POLICY IF EXISTS invoices_insert_admin ON public.invoices;
CREATE POLICY invoices_insert_admin ON public.invoices
  FOR INSERT TO org_admin
  WITH CHECK (org_id = (SELECT app.current_org_id()) AND (SELECT app.is_org_admin()));

DROP POLICY IF EXISTS invoices_update_admin ON public.invoices;
CREATE POLICY invoices_update_admin ON public.invoices
  FOR UPDATE TO org_admin
  USING (org_id = (SELECT app.current_org_id()) AND (SELECT app.is_org_admin()))
  WITH CHECK (org_id = (SELECT app.current_org_id()) AND (SELECT app.is_org_admin()));
