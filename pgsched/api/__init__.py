"""`pgsched serve`: the HTTP API over pgsched.client.Client and pgsched.admin.Admin."""
