"""What IVS accepts: the botocore models as routes, input checks, ARN and header rules."""
