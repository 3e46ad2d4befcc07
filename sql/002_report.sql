-- 002_report.sql — helpers for `tierq report`, usable from plain SQL as well.
--
-- tierq.normalize_answer(text): the form in which a job's result and its expected answer are
-- compared when accuracy is measured. Lower-cased; punctuation and quotes (ASCII and typographic)
-- stripped from the start and end of every word; runs of whitespace collapsed to one space; trimmed.
-- Punctuation inside a word is kept, so '3.14' never equals '314' and 'e-mail' stays one word:
--   ' "Billing." '  -> 'billing'        'Hello,   World!' -> 'hello world'
--   '(yes)'         -> 'yes'            '3.14'            -> '3.14'
-- NULL in, NULL out.
CREATE FUNCTION tierq.normalize_answer(answer text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
    SELECT btrim(regexp_replace(regexp_replace(regexp_replace(lower(answer),
        '(^|\s)[[:punct:]\u201C\u201D\u2018\u2019\u00AB\u00BB\u201E]+', '\1', 'g'),
        '[[:punct:]\u201C\u201D\u2018\u2019\u00AB\u00BB\u201E]+(\s|$)', '\1', 'g'),
        '\s+', ' ', 'g'))
$fn$;

COMMENT ON FUNCTION tierq.normalize_answer(text) IS
    'lower-case, strip punctuation and quotes at word edges, collapse whitespace: how tierq report compares result with expected';
