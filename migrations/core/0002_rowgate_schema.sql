-- rowgate's own state. Callers never touch these tables directly: the functions
-- below run as their owner and derive the principal from the transaction-local
-- role and claims that rowgate set, so one principal can never read or claim
-- another's idempotency keys.
CREATE SCHEMA IF NOT EXISTS rowgate;
REVOKE ALL ON SCHEMA rowgate FROM PUBLIC;

CREATE TABLE IF NOT EXISTS rowgate.idempotency_keys (
  principal    text        NOT NULL,
  key          text        NOT NULL,
  request_hash text        NOT NULL,
  result       jsonb,
  created_at   timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz NOT NULL,
  PRIMARY KEY (principal, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_expires_at ON rowgate.idempotency_keys (expires_at);
REVOKE ALL ON rowgate.idempotency_keys FROM PUBLIC;

CREATE OR REPLACE FUNCTION rowgate.current_principal() RETURNS text
  LANGUAGE sql STABLE
  SET search_path = ''
  AS $$
    SELECT coalesce(current_setting('role', true), '') || ':' ||
           coalesce(nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub', '')
  $$;

-- Returns NULL when this call owns the key (the caller runs the write, then
-- idempotency_finish); otherwise the stored result of the earlier call. A second
-- concurrent call with the same key waits here until the first commits or aborts.
CREATE OR REPLACE FUNCTION rowgate.idempotency_begin(p_key text, p_request_hash text, p_ttl interval)
  RETURNS jsonb
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER
  SET search_path = ''
  AS $$
DECLARE
  v_principal text := rowgate.current_principal();
  v_row rowgate.idempotency_keys;
BEGIN
  DELETE FROM rowgate.idempotency_keys
   WHERE principal = v_principal AND key = p_key AND expires_at < now();
  INSERT INTO rowgate.idempotency_keys (principal, key, request_hash, expires_at)
  VALUES (v_principal, p_key, p_request_hash, now() + p_ttl)
  ON CONFLICT (principal, key) DO NOTHING;
  IF FOUND THEN
    RETURN NULL;
  END IF;
  SELECT * INTO v_row FROM rowgate.idempotency_keys WHERE principal = v_principal AND key = p_key;
  IF v_row.request_hash <> p_request_hash THEN
    RAISE EXCEPTION 'idempotency key reused with a different request'
      USING ERRCODE = 'RG001';
  END IF;
  RETURN v_row.result;
END
$$;

CREATE OR REPLACE FUNCTION rowgate.idempotency_finish(p_key text, p_result jsonb)
  RETURNS void
  LANGUAGE sql VOLATILE SECURITY DEFINER
  SET search_path = ''
  AS $$
    UPDATE rowgate.idempotency_keys SET result = p_result
     WHERE principal = rowgate.current_principal() AND key = p_key
  $$;

CREATE OR REPLACE FUNCTION rowgate.idempotency_sweep() RETURNS integer
  LANGUAGE sql VOLATILE SECURITY DEFINER
  SET search_path = ''
  AS $$
    WITH gone AS (DELETE FROM rowgate.idempotency_keys WHERE expires_at < now() RETURNING 1)
    SELECT count(*)::integer FROM gone
  $$;

REVOKE ALL ON FUNCTION rowgate.current_principal(), rowgate.idempotency_begin(text, text, interval),
  rowgate.idempotency_finish(text, jsonb), rowgate.idempotency_sweep() FROM PUBLIC;
-- Any role rowgate acts as (including a project's own custom roles) may call these:
-- they only ever touch the calling principal's own keys.
GRANT USAGE ON SCHEMA rowgate TO PUBLIC;
GRANT EXECUTE ON FUNCTION rowgate.idempotency_begin(text, text, interval),
  rowgate.idempotency_finish(text, jsonb), rowgate.idempotency_sweep() TO PUBLIC;
