@SET x = 1;
COPY "public"."alf_content_url" (orphan_time, content_size, "id", content_url) FROM stdin;
\N	5	1	store://a
\.
