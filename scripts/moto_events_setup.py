"""Create in moto the EventBridge bus the service publishes to, a rule matching
`source = reservation-api`, and an SQS queue as its target, so that tests can read what was
delivered. Prints the queue URL. Idempotent.

    python scripts/moto_events_setup.py --endpoint http://127.0.0.1:5000
"""

import argparse
import json

import boto3


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--bus", default="ticket-reservation-events")
    p.add_argument("--queue", default="reservation-events")
    a = p.parse_args()
    kw = dict(endpoint_url=a.endpoint, region_name=a.region, aws_access_key_id="testing", aws_secret_access_key="testing")
    events, sqs = boto3.client("events", **kw), boto3.client("sqs", **kw)
    if a.bus not in [b["Name"] for b in events.list_event_buses()["EventBuses"]]:
        events.create_event_bus(Name=a.bus)
    url = sqs.create_queue(QueueName=a.queue)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="reservation-api-to-queue", EventBusName=a.bus, EventPattern=json.dumps({"source": ["reservation-api"]}))
    events.put_targets(Rule="reservation-api-to-queue", EventBusName=a.bus, Targets=[{"Id": "queue", "Arn": arn}])
    print(url)


if __name__ == "__main__":
    main()
