--
-- PostgreSQL database dump
--
SET statement_timeout = 0;
CREATE TABLE public.alf_content_url (id bigint NOT NULL, content_url character varying(255) NOT NULL);
COPY public.alf_node (id, uuid) FROM stdin;
1	abc
\.

COPY public.alf_content_url (id, content_url, content_url_short, content_url_crc, content_size, orphan_time) FROM stdin;
1	store://2024/3/7/14/5/0b1a-uuid.bin	0b1a.bin	12345	1024	\N
2	store://2024/3/7/14/6/a\tb\\c\x41\101.bin	x	-1	0	1700000000000
\.

-- done
