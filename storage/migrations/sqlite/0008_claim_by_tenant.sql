-- A tenant's claim reads only its own live jobs of a topic and the topic's
-- public ones, so another tenant's backlog on the same topic name costs it
-- nothing (the one topic-wide index made every claim step over it).
DROP INDEX jobs_claim;
CREATE INDEX jobs_claim_tenant ON jobs (topic, tenant, priority DESC, attempts, created_at)
    WHERE state IN ('open', 'leased');
CREATE INDEX jobs_claim_public ON jobs (topic, priority DESC, attempts, created_at)
    WHERE state IN ('open', 'leased') AND visibility = 'public';
