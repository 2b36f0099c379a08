"""Where the model a download replaces lay, for the row to say so while the download waits or runs;
filled in for the downloads not finished at the upgrade."""

from django.db import migrations, models


def from_the_library(apps, schema_editor):
    DownloadTask = apps.get_model("downloads_app", "DownloadTask")
    ModelFile = apps.get_model("models_app", "ModelFile")
    waiting = DownloadTask.objects.filter(replaces__isnull=False).exclude(status__in=["done", "cancelled"])
    for task in waiting:
        older = ModelFile.objects.filter(pk=task.replaces).first()
        if older is not None:
            task.replaces_path = f"{older.folder_type}/{older.relative_path}"
            task.save(update_fields=["replaces_path"])


class Migration(migrations.Migration):
    dependencies = [
        ("downloads_app", "0008_downloadedfile_hub_check"),
        ("models_app", "0013_info_task_automatic"),
    ]

    operations = [
        migrations.AddField(
            model_name="downloadtask",
            name="replaces_path",
            field=models.CharField(
                blank=True, help_text="Where that model lay when the download was asked for.", max_length=1100
            ),
        ),
        migrations.RunPython(from_the_library, migrations.RunPython.noop),
    ]
