-- Audit rows written before actions were stable names ("task queued", a route's
-- summary, "campaign previewed") take the action and object type their route
-- declares now, so a filter on either finds old and new rows alike. Old dry
-- runs are told by what they answered: a bulk-job preview is a 200 (a new job
-- is a 201), a campaign preview was recorded as "campaign previewed".
UPDATE audit_log AS a
SET action = CASE
        WHEN v.dry_run IS NOT NULL
             AND (a.action = 'campaign previewed'
                  OR (a.route = '/api/v1/bulk-jobs' AND a.status = 200))
        THEN v.dry_run
        ELSE v.action
    END,
    object_type = v.object_type
FROM (VALUES
    ('DELETE', '/api/v1/devices/{device_id}', 'device.delete', NULL, 'device'),
    ('POST', '/api/v1/devices/{device_id}/tags', 'device.tag.add', NULL, 'device'),
    ('DELETE', '/api/v1/devices/{device_id}/tags/{tag}', 'device.tag.remove', NULL, 'device'),
    ('POST', '/api/v1/devices/{device_id}/tasks', 'device.task.create', NULL, 'device'),
    ('POST', '/api/v1/devices/{device_id}/connection-request', 'device.connection_request', NULL, 'device'),
    ('DELETE', '/api/v1/tasks/{task_id}', 'task.cancel', NULL, 'task'),
    ('POST', '/api/v1/tasks/{task_id}/retry', 'task.retry', NULL, 'task'),
    ('PUT', '/api/v1/files/{name}', 'file.upload', NULL, 'file'),
    ('DELETE', '/api/v1/files/{name}', 'file.delete', NULL, 'file'),
    ('POST', '/api/v1/tokens', 'token.create', NULL, 'token'),
    ('DELETE', '/api/v1/tokens/{name}', 'token.revoke', NULL, 'token'),
    ('POST', '/api/v1/users', 'user.create', NULL, 'user'),
    ('PATCH', '/api/v1/users/{username}', 'user.update', NULL, 'user'),
    ('DELETE', '/api/v1/users/{username}', 'user.delete', NULL, 'user'),
    ('POST', '/api/v1/me/password', 'user.password.change', NULL, 'user'),
    ('POST', '/api/v1/bulk-jobs', 'bulk_job.create', 'bulk_job.dry_run', 'bulk_job'),
    ('POST', '/api/v1/bulk-jobs/{bulk_id}/cancel', 'bulk_job.cancel', NULL, 'bulk_job'),
    ('POST', '/api/v1/bulk-jobs/{bulk_id}/pause', 'bulk_job.pause', NULL, 'bulk_job'),
    ('POST', '/api/v1/bulk-jobs/{bulk_id}/resume', 'bulk_job.resume', NULL, 'bulk_job'),
    ('PUT', '/api/v1/firmware/products/{oui}/{product_class}', 'product.version_scheme.set', NULL, 'product'),
    ('POST', '/api/v1/firmware/images', 'image.create', NULL, 'image'),
    ('DELETE', '/api/v1/firmware/images/{image_id}', 'image.delete', NULL, 'image'),
    ('POST', '/api/v1/campaigns', 'campaign.create', 'campaign.dry_run', 'campaign'),
    ('DELETE', '/api/v1/campaigns/{campaign_id}', 'campaign.delete', NULL, 'campaign'),
    ('POST', '/api/v1/campaigns/{campaign_id}/start', 'campaign.start', NULL, 'campaign'),
    ('POST', '/api/v1/campaigns/{campaign_id}/pause', 'campaign.pause', NULL, 'campaign'),
    ('POST', '/api/v1/campaigns/{campaign_id}/resume', 'campaign.resume', NULL, 'campaign'),
    ('POST', '/api/v1/campaigns/{campaign_id}/approve', 'campaign.approve', NULL, 'campaign'),
    ('POST', '/api/v1/campaigns/{campaign_id}/cancel', 'campaign.cancel', NULL, 'campaign'),
    ('POST', '/api/v1/campaigns/{campaign_id}/retry-failed', 'campaign.retry_failed', NULL, 'campaign'),
    ('POST', '/api/v1/webhooks', 'webhook.create', NULL, 'webhook'),
    ('DELETE', '/api/v1/webhooks/{webhook_id}', 'webhook.delete', NULL, 'webhook'),
    ('POST', '/api/v1/policies', 'policy.create', NULL, 'policy'),
    ('PUT', '/api/v1/policies/{policy_id}', 'policy.update', NULL, 'policy'),
    ('DELETE', '/api/v1/policies/{policy_id}', 'policy.delete', NULL, 'policy'),
    ('POST', '/api/v1/policies/{policy_id}/dry-run', 'policy.dry_run', NULL, 'policy'),
    ('PUT', '/api/v1/devices/{device_id}/overrides', 'device.overrides.set', NULL, 'device')
) AS v (method, route, action, dry_run, object_type)
WHERE a.method = v.method
  AND a.route = v.route
  AND a.action <> v.action
  AND a.action IS DISTINCT FROM v.dry_run;
