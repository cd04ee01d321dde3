"""Work that combines the domain rules (acs.core) with the store (acs.store):
firmware campaigns and the catalog. No HTTP here: the CWMP endpoint, the API,
the FOTA check-in and the scheduler's ticks all call these."""
