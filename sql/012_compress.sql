-- 012: context compression by the cheap tier (issue 10). A job's long context is cleaned for free
-- (whitespace, markup, repeated lines), then, when still over its kind's compress.threshold_tokens,
-- rewritten to about compress.target_tokens by the kind's compress.model. The rewrite is paid once
-- per document: kept here under a SHA-256 of (cleaned context, compressor model, target, and the
-- question when the compression is question-aware), reused by every job, run and process that
-- meets the same key.
CREATE TABLE tierq.compressed (
    key             text COLLATE "C" PRIMARY KEY CONSTRAINT compressed_key_is_sha256_hex CHECK (key ~ '^[0-9a-f]{64}$'),
    kind            text NOT NULL,
    model           text NOT NULL,           -- the compressor
    target_tokens   integer NOT NULL,
    -- the compressed context: one zstd frame, or its UTF-8 bytes when the frame would not be smaller
    -- (as tierq.cache.answer_z)
    text_z          bytea NOT NULL,
    raw_len         integer NOT NULL CONSTRAINT compressed_raw_len_range CHECK (raw_len BETWEEN 0 AND 67108864),
    tokens_before   integer NOT NULL,        -- estimated tokens of the cleaned context
    tokens_after    integer NOT NULL,        -- ... and of the compressed one
    cost_usd        numeric(20,12) NOT NULL DEFAULT 0, -- what the compression call cost
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz,
    uses            bigint NOT NULL DEFAULT 0,
    expires_at      timestamptz NOT NULL     -- sliding, the kind's cache.ttl_s after its last use
);
CREATE INDEX compressed_kind_expires_idx ON tierq.compressed (kind, expires_at);
GRANT SELECT, INSERT, UPDATE, DELETE ON tierq.compressed TO tierq_daemon;

-- Per job: what compression did to its context ('none': short enough or the kind does not compress;
-- 'cleaned': the free clean-up alone brought it under the threshold; 'compressed': a compression
-- call made for it (shared with the jobs that had the same key); 'reused': a stored compression;
-- 'failed': the compressor's output was unusable, the cleaned original was sent), the context's
-- estimated tokens before and after, and what sending the shorter context saved: input tokens
-- and dollars over every request that carried it (the compression call's cost is in cost_usd).
ALTER TABLE tierq.jobs ADD COLUMN compression text NOT NULL DEFAULT 'none'
    CONSTRAINT jobs_compression_valid CHECK (compression IN ('none', 'cleaned', 'compressed', 'reused', 'failed'));
ALTER TABLE tierq.jobs ADD COLUMN context_tokens_before integer;
ALTER TABLE tierq.jobs ADD COLUMN context_tokens_after integer;
ALTER TABLE tierq.jobs ADD COLUMN compress_tokens_saved bigint NOT NULL DEFAULT 0;
ALTER TABLE tierq.jobs ADD COLUMN compress_saved_usd numeric(20,12) NOT NULL DEFAULT 0;
